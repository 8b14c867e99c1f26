"""Word lists of the redaction rules (data): words that are never part of a name, words of prose that are
nobody's name, word endings no name has, and words that are never a street name.  Used by
:mod:`radloop.labeling.redact_rules`."""

from __future__ import annotations

__all__ = ["FAMILY_HISTORY_WORDS", "NAME_PARTICLES", "NAME_SUFFIXES", "NOT_NAMES", "NOT_STREET_NAMES",
           "PATIENT_VERBS", "PROCEDURE_WORDS", "PROSE_SUFFIXES", "PROSE_WORDS", "RELATIVES", "UPPER_NAME_PARTICLES"]

#: Words that are never part of a name (a name stops before them): masks, titles, credentials, modalities,
#: header words, common words after a cue.  Matched in Capitalised, Title and UPPER case.
NOT_NAMES = frozenset("""
xxxx xx x the a an and or of on at in to for with by from as is was were be been has had have no not none
who which that this these those he she his her they their it its there here also then than please
dr mr mrs ms mx miss prof doctor md m.d. do d.o. phd ph.d. mbbs mbchb frcr facr frcpc rn np pa pa-c dds dmd
rt rrt jr sr ii iii ct cta mri us pet xr cr dx nm cxr kub ap pet-ct spect ecg ekg icu or
patient pt name age sex gender dob id mrn history information position positioning identifier status
report reports findings finding impression comparison indication indications technique exam examination
study date time left right bilateral chest radiograph radiology department hospital clinic service
physician provider radiologist resident attending referring ordering
signed cosigned dictated transcribed electronically emergency staff consulting
""".split())

#: Words of prose that are no names (a name stops before them) and are nobody's name, so that Title-cased
#: prose after a cue stays ("Patient Appears Morbidly Obese", "Ordering Physician States That"): function
#: words, report verbs, nouns and adjectives.  Names that are also words (Will, May, Young, Small, White,
#: Brown, Hope, Rose, Bell, Price, Page ...) are left out: a cue before them still finds them.
PROSE_WORDS = frozenset("""
about above across after again against all almost alone along already although always am among another any anything
are around because before behind being below beneath between beyond both but cannot could did does doing done during
each either even ever every except few further had has hasn have having how however if into just least many might most
much must my neither never nor nothing now off often once only onto other otherwise our out over perhaps quite rather
same should so some something such than thereafter therefore though through thus too toward towards under until up
upon us very what whatever when where whereas whether while whom whose why within without would yet you your appear
appears appearing seem seems show shows reveals remains remain returns return returning states presents presenting
complains complaining reports reporting denies denying refuses takes taking take took taken given gets getting got
went go goes going come comes coming came underwent undergoing undergone receiving lying lies sitting standing supine
upright erect prone recumbent semierect stand sit walk walking breathing breathe coughing vomiting hallucinating
hurting feeling feels felt falls fall fallen found able aware awake alert calm lethargic obese overweight thin
cachectic elderly pregnant febrile afebrile ill sick visit visits body habitus size weight height build girth arms arm
shoulders shoulder neck back chest lungs heart abdomen pelvis spine skin clothing jewelry gown hair care effort breath
positioning technique quality exposure views view film films image images study studies exam exams bedside request
requests order orders office family consent history hx complaint complaints symptoms symptom pain cough fever fevers
trauma injury injuries fractures pneumonia surgery surgeries procedure procedures therapy antibiotics medications pre
recent new old current follow followup recommend recommends suggest suggests consider correlate likely unlikely
suspect concern concerning suboptimal adequate inadequate satisfactory unchanged worse severe mild moderate marked
minimal slight significant aorta airspace airspaces anterior posterior superior inferior ankle knee hip wrist elbow
rib ribs lobe lobes nodule nodules opacity density tumor tumors lesions hernia hiatal tortuosity ectasia infiltrate
infiltrates scar scarring hilar hila hilum mediastinum diaphragm hemidiaphragm osteophytes spurs fissure azygos
vertebral thoracic workup silhouette contour contours bony soft pulmonary cardiac chronic interval prominent
bibasilar basilar streaky coronary patchy persistent diffuse focal vague multilevel midline incidental calcific clear
dense borderline alive deceased living healthy unknown adopted compliance tolerance transport identity safety
mobility anxiety discomfort intake output response sedation hydration bed table chart room monitor portal record
records transfer data
""".split())

#: Word endings no name has ("Rotation", "Morbidly", "Antibiotic", "Recalled"), with the shortest word each
#: applies to ("Clement", "Olive", "Ahmed", "Fleming" stay names).
PROSE_SUFFIXES = dict((end, int(size)) for end, size in (item.split(":") for item in """
tion:6 sion:6 ment:8 ous:5 ive:6 ible:6 able:6 ful:6 less:6 osis:6 itis:6 emia:6 tomy:6 plasty:7 graphy:7 gram:7
ology:6 scopy:7 ism:6 ical:6 eral:7 ural:6 inal:6 onal:6 tral:7 rmal:6 ular:6 otic:6 etic:6 atic:6 ytic:6 itic:6
ified:7 dly:6 tly:6 ially:7 cally:7 rally:7 mally:7 ibly:6 ably:6 ously:7 ively:7 ately:7 ial:6 rtic:6 oid:6
enal:6 rsal:6 asis:7 trophy:7 pathy:7 megaly:7 ema:6 oma:8 ture:7 ities:7 ening:7 owing:7
""".split()))
PROSE_SUFFIXES.update((f"{pair}ed", 5) for pair in "at iz is ll ss pp tt rr ct rt nt st nd or ur in iv ov lv en "
                                                     "er it ud id ot ch on as us ag gg nn dd bb ck rm ew".split())
#: Words that are never a street name (an address needs a house number, 1-3 street-name words and a street
#: type, and reports are full of "<count> <noun> ..." in Title and UPPER case): function words, units, time
#: spans ("3 DAYS DECREASED RESPIRATORY DRIVE"), what is counted in reports (views, tubes, wires, leads, clips,
#: pellets ...), ECG words and clinical adjectives ("1 Lumbar Drive", "12 WEEKS GESTATION COURT").  Matched in
#: any case.
NOT_STREET_NAMES = frozenset("""
a an the and or of on at in to for with by from as is are was no not per via x xxxx
mm cm m ml cc mg kg lb lbs
view views image images series vessel vessels level levels film films slice slices projection projections
tube tubes wire wires lead leads clip clips line lines catheter catheters drain drains stent stents
screw screws plate plates pin pins coil coils suture sutures staple staples valve valves electrode electrodes
port ports pacer pacemaker sternal sternotomy surgical endotracheal et ng og ett picc chest
st ekg ecg elevation elevations depression depressions segment segments wave waves
nodule nodules mass masses rib ribs lobe lobes air fluid lane lanes mile miles km mph kph car cars lvad
millimeter millimeters centimeter centimeters inch inches foot feet degree degrees different various several
other multiple additional separate resident residents physician physicians doctor doctors nurse nurses
second seconds sec secs minute minutes min mins hour hours hr hrs day days week weeks wk wks month months mo mos
year years yr yrs time times episode episodes beat beats breath breaths pack packs dose doses cycle cycles
gestation gestational respiratory ventilatory hypoxic hypercapnic sympathetic decreased increased reduced
diminished impaired poor weak absent depressed altered elevated retained residual pellet pellets fragment fragments
bullet bullets shotgun shrapnel metallic foreign body bodies lumbar cervical thoracic sacral spinal spine
""".split())

#: Words (up to three) before a procedure after a spine level or fraction, which the date rules then leave alone
#: ("prior 4/5 posterior fusion", "since 4/5 posterior lumbar interbody fusion").  Matched in any case.
PROCEDURE_WORDS = tuple("""spinal spine cervical thoracic lumbar sacral lumbosacral thoracolumbar cervicothoracic
posterior anterior lateral posterolateral interbody transforaminal extreme oblique partial total subtotal bilateral
left right open laparoscopic surgical disc disk level levels""".split())

#: Relatives and carers whose name may follow ("the patient's mother, Maria Quixote", "his wife Jane Doe"):
#: HIPAA Safe Harbor (A) covers relatives' names too.  Matched in lower, Capitalised, Title and UPPER case.
RELATIVES = tuple("""mother father mom dad parent parents wife husband spouse partner son daughter child brother
sister sibling aunt uncle niece nephew cousin grandmother grandfather grandson granddaughter grandchild stepmother
stepfather stepson stepdaughter fiance fiancee fiancé fiancée girlfriend boyfriend guardian caregiver carer friend
neighbor neighbour roommate""".split())

#: Lower-case particles of multi-part surnames ("Dr. van der Berg", "Dr. de la Cruz", "Dr. al-Hassan"), up to
#: three before the name word; "St." / "ST." ("Dr. St. John").  "do" is left out (an English word).
NAME_PARTICLES = tuple("""van von der den de del della dei di da das dos du la le ten ter bin ibn al el St. ST.
Ste. STE.""".split())
#: The same in UPPER case ("Maria DE LA CRUZ", "JAN VAN DER BERG"; walk 22a).  Left out: LE, EL, AL, TEN, TER, BIN,
#: IBN (lower extremity, words, abbreviations); also part of :data:`NAME_PARTICLES`' runs.  After one of these an
#: UPPER-CASE surname counts as a name where Title-case names are expected ("referring physician Maria DE LA CRUZ").
UPPER_NAME_PARTICLES = tuple("VAN VON DER DEN DE DEL DELLA DI DA DAS DOS DU LA".split())

#: Words of family-history lists ("Mother: Breast Cancer", "Father: Heart Disease", "Sister: Sickle Cell", "Father:
#: Mi Htn"): after "<relative>:" capitalised words are a name only when none of them is one of these (nor a prose
#: word).  Conditions, organs, their abbreviations and the words around them; eponyms of rare conditions that are
#: nobody's usual name ("Mother: Tay-Sachs", "MOTHER: VON WILLEBRAND"; walk 22a: Wilson, Turner, Addison stay out, they
#: are names).  Matched in Title and UPPER case.
FAMILY_HISTORY_WORDS = frozenset("""
cancer cancers ca carcinoma tumor tumour malignancy leukemia lymphoma melanoma sarcoma myeloma polyp polyps
disease diseases disorder disorders syndrome condition attack failure stroke strokes diabetes diabetic asthma
aneurysm aneurysms clot clots embolism arthritis lupus dementia alzheimer alzheimers parkinson parkinsons
huntington crohn crohns hodgkin hodgkins graves hashimoto marfan down sickle cell cells cystic fibrosis sclerosis
emphysema hypertension hyperlipidemia cholesterol pressure high blood sugar thyroid glaucoma seizure seizures epilepsy
migraine migraines depression bipolar schizophrenia alcoholism addiction obesity gout anemia hemophilia kidney
kidneys stones renal liver lung lungs breast breasts colon colorectal rectal prostate ovarian ovary uterine cervical
pancreatic pancreas gastric stomach esophageal bladder skin brain bone bones heart cardiac coronary artery valve
death died dead passed away sudden suicide accident overdose murdered killed natural causes age aged old type
mi htn dm cad copd chf cva tia dvt pe afib aaa gerd ckd esrd hld hcv hbv hiv aids tb ra sle als ms
hepatitis cirrhosis tuberculosis pneumonia infection covid dialysis transplant surgery multiple negative positive
noncontributory unremarkable significant none unknown healthy well alive deceased living
good fair poor fine excellent health arrhythmia arrhythmias angina fibromyalgia murmur allergy allergies hypothyroid
hyperthyroid hypothyroidism hyperthyroidism autism dyslexia polio mental illness
osa pad pvd bph ibs ibd ocd ptsd adhd chd ashd cabg aml cll cml nhl hcc rcc brca svt wpw hcm dcm iddm niddm pkd
djd bp
oa gi ad pd uc bleed bleeding knees hips asd vsd pda avm pud uti etoh ipf ild pah
tay sachs ehlers danlos kawasaki cushing behcet sjogren raynaud fabry gaucher niemann willebrand paget guillain barre
charcot duchenne klinefelter noonan alport cowden peutz jeghers hirschsprung kartagener osler rendu tourette asperger
gehrig creutzfeldt jakob perthes osgood schlatter scheuermann dupuytren kienbock whipple wegener takayasu moyamoya
fanconi blackfan wiskott hurler pompe krabbe canavan rett prader willi angelman digeorge patau meniere waldenstrom
castleman
""".split())

#: Generational suffixes written after a name ("JOHN SMITH JR", "Roe III"): part of the name after a name label.
NAME_SUFFIXES = ("Jr", "Sr", "JR", "SR", "II", "III", "IV")

#: Verbs of report narrative after "Patient <Surname>" ("Patient Smith presents with ..."): one capitalised word
#: between "Patient" and one of these (lower case, as written) is a surname.
PATIENT_VERBS = tuple("""is was has had presents presented reports reported complains complained denies denied states
stated fell returns returned arrives arrived underwent comes came notes noted describes described developed
sustained tripped slipped injured twisted""".split())
